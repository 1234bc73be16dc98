// Package web holds keyrelay's browser client: the chat page and the
// JavaScript client library web/keyrelay.js, with their tests.
package web
