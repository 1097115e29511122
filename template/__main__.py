"""`python -m template <fit|validate|test|predict|tool> ...`: the engine's CLI on this project's configs."""

from trainforge.entry import main

if __name__ == "__main__":
    main()
