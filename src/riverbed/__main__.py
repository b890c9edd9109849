from riverbed.cli import main

main()
