"""The command line: ``main.py`` builds the parser from the commands (one module per command
group: ``store``, ``keys``, ``imports``, ``exports``, ``audit``, ``demo``) and the plugin commands
other packages register (``serve``, from ``server/``, through an entry point).
"""

from cardsvc.cli.main import (
    COMMANDS,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    PLUGIN_GROUP,
    Command,
    all_commands,
    build_parser,
    main,
    plugin_commands,
)

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "PLUGIN_GROUP", "Command",
           "all_commands", "build_parser", "main", "plugin_commands"]
