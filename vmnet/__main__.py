from vmnet.cli import main

raise SystemExit(main())
