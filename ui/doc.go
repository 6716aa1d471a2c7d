// Package ui is `flowlens ui`: a local web page that draws who talks to
// whom, what is dropped and where the kernel disagrees with the intended
// policy, fed by one JSON stream (/api/stream, Server-Sent Events) that this
// package owns. The same page, with its data inlined, renders the offline
// policy matrix as one self-contained HTML file.
package ui
