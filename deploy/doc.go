// Package deploy holds no code: its directory keeps the files that put
// keyrelay behind a reverse proxy (nginx.conf, used by docker-compose.yml,
// and Caddyfile), and its tests check them, and scripts/cluster.sh, with
// real processes on loopback:
//
//   - TestNginx runs Debian's nginx with the shipped nginx.conf (only its
//     addresses and ports replaced) in front of two keyrelay processes on
//     one redis-server, and drives Go clients, a browser's WebSocket
//     handshake and, where Chromium is installed, the chat page through
//     it. It skips where nginx is not installed, unless
//     KEYRELAY_REQUIRE_NGINX=1 (as in CI), which makes it fail instead.
//   - TestClusterScript runs scripts/cluster.sh with the ports it might
//     use taken by servers that answer like a relay or like Redis, and
//     kills one of its relays: it must work or fail loudly (exit 1, logs
//     kept, nothing left running).
package deploy
