// Package docs holds the README's own tests: its commands that need no
// cluster run, its metric names exist, and its LogQL names fields the flow
// log writes, so an example that stops working fails CI.
package docs
