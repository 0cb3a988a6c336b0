package serve

import (
	"embed"
	"io/fs"
	"net/http"
)

// consoleFiles are the run console's pages, script and style, built into
// the binary: the console loads nothing from any other host.
//
//go:embed console
var consoleFiles embed.FS

// consoleRoutes adds the run console to mux.
func consoleRoutes(mux *http.ServeMux) {
	static, _ := fs.Sub(consoleFiles, "console/static")
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/packs/runs", http.StatusFound)
	})
	mux.HandleFunc("GET /console/packs/runs", page("console/runs.html"))
	mux.HandleFunc("GET /console/packs/runs/{id}", page("console/run.html"))
}

// page serves one of the console's HTML pages; the page reads what it
// shows from the API.
func page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := consoleFiles.ReadFile(name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	}
}
