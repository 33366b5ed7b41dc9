import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while torch and timm load: nothing has started yet
    sys.exit(130)

main()
