from deftpipe.cli.main import main

main()
