from coldrec.cli import app

app(prog_name="coldrec")
