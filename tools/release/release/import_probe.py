"""Run by `verify` inside the fresh virtualenv: imports each module, prints one line per failure.

Usage: python -I import_probe.py strict|lenient FIRST_PARTY_TOPS MODULE...
In lenient mode a module whose import fails only because a third-party module is missing (the
wheels were installed without their dependencies) is not reported.
"""

import importlib
import sys


def main(argv: list[str]) -> int:
    strict = argv[0] == "strict"
    first_party = set(argv[1].split(","))
    failed = 0
    for module in argv[2:]:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            missing_top = (error.name or "").split(".")[0]
            if strict or missing_top in first_party:
                print(f"{module}: {error}")
                failed += 1
        except Exception as error:  # any import-time failure is a finding
            print(f"{module}: {type(error).__name__}: {error}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
