from podhl.pedcc.cli import main

raise SystemExit(main())
