"""Our graphql-transport-ws and its lean videoStatus subscribers: the WebSocket half of the fast path."""
