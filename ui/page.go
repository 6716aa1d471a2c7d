package ui

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
)

// assets are the page, its script and style, and the vendored Cytoscape.js:
// everything the page needs is in the binary (no CDN; an offline homelab
// works).
//
//go:embed assets
var assets embed.FS

var pageTmpl = template.Must(template.ParseFS(assets, "assets/index.html"))

// pageData fills index.html. Served, the page loads its script and style
// from /assets and its data from /api/stream; inlined, everything is in the
// one file, data included.
type pageData struct {
	Title  string
	Inline bool
	CSS    template.CSS
	Lib    template.JS
	App    template.JS
	Data   template.JS
}

func renderPage(w io.Writer, d pageData) error {
	if err := pageTmpl.Execute(w, d); err != nil {
		return fmt.Errorf("render page: %w", err)
	}
	return nil
}

// inlinePage renders the page with its assets and data inlined.
func inlinePage(w io.Writer, title string, data any) error {
	read := func(name string) (string, error) {
		b, err := assets.ReadFile("assets/" + name)
		return string(b), err
	}
	css, err := read("app.css")
	if err != nil {
		return err
	}
	lib, err := read("vendor/cytoscape.min.js")
	if err != nil {
		return err
	}
	mapJS, err := read("map.js")
	if err != nil {
		return err
	}
	app, err := read("app.js")
	if err != nil {
		return err
	}
	// json.Marshal escapes <, > and &, so the data cannot close the
	// script element it sits in.
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode page data: %w", err)
	}
	//nolint:gosec // our own embedded assets and escaped JSON
	return renderPage(w, pageData{Title: title, Inline: true, CSS: template.CSS(css), Lib: template.JS(lib), App: template.JS(mapJS + "\n" + app), Data: template.JS(raw)})
}

// handler serves the page, its assets and the stream.
func handler(stream http.Handler) http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(sub)))
	mux.Handle("GET /api/stream", stream)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = renderPage(w, pageData{Title: "flowlens"})
	})
	return mux
}
