"""python -m camcli"""

from .cli import main

main()
