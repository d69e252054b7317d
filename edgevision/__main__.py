from edgevision.cli.app import main

main()
