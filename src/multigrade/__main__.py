"""`python -m multigrade` is the `mgdl` command."""

if __name__ == "__main__":
    from multigrade.cli import main

    main()
