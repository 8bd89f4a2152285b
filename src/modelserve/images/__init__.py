"""Images for vision chat: data URLs, remote fetching under an address policy, decoding."""
