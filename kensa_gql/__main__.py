from kensa_gql.cli import main

raise SystemExit(main())
