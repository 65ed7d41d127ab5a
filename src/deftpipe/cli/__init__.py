"""Command-line interface: thin Typer commands that call one library function each."""
