from plato.cli import main

main()
