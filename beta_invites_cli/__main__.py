from beta_invites_cli.cli import main

main()
