from operator_tui.cli import main

raise SystemExit(main())
