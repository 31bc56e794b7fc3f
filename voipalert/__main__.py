from voipalert.cli import main

raise SystemExit(main())
