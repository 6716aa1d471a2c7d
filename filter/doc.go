// Package filter compiles FlowFilter messages into matchers that decide, without
// allocating, whether a Flow passes an allow list and a deny list.
//
// Semantics follow the Observer API: a flow passes when it matches any allow
// filter (or the allow list is empty) and no deny filter. Within one filter the
// set fields AND together; the values of one repeated field OR together.
package filter
