from .cli import main

if __name__ == "__main__":  # importing this module (as tools that walk the package do) runs nothing
    main()
