from trainforge.cli import main

if __name__ == "__main__":
    main()
