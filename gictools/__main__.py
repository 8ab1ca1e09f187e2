from gictools.cli import app

app()
