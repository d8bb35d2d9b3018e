"""Privacy beyond pseudonyms: differentially private aggregates (`aggregates`) and the pseudonymous keys'
rotation (`keys`)."""
