from tarvis_fast.demo.cli import main

raise SystemExit(main())
