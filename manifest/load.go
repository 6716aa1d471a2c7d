package manifest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Load reads files or directories. Directories are walked recursively in
// lexical order for *.yaml, *.yml and *.json; hidden entries (".git") and
// kustomization files (build instructions for kustomize, not objects) are
// skipped. A file named explicitly is read whatever its extension.
func Load(paths ...string) (*Objects, error) {
	all := &Objects{Origins: map[Key]Origin{}}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("load manifests: %w", err)
		}
		if !fi.IsDir() {
			if err := loadFile(all, p); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if path != p && strings.HasPrefix(name, ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !isManifestName(name) {
				return nil
			}
			return loadFile(all, path)
		})
		if err != nil {
			return nil, err
		}
	}
	return all, nil
}

func isManifestName(name string) bool {
	lower := strings.ToLower(name)
	switch lower {
	case "kustomization.yaml", "kustomization.yml", "kustomization.json":
		return false
	}
	switch filepath.Ext(lower) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func loadFile(all *Objects, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load manifests: %w", err)
	}
	defer f.Close()
	o, err := Decode(path, f)
	if err != nil {
		return err
	}
	return all.merge(o)
}
