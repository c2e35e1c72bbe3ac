from train_cli.cli import main

main()
