from mtlbench.cli import app

app()
