from agentsight.cli import main

main()
