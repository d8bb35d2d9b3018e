from coldrec.cli import app

app()
