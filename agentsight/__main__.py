from agentsight.commands.app import main

main()
