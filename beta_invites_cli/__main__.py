from beta_invites_cli.console import main

main()
