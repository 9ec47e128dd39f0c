from .manifest import main

main()
