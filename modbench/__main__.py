from modbench.cli.app import main

main()
