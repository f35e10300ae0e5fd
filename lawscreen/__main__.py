from lawscreen.cli import main

main()
