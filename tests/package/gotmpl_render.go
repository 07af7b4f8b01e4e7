// Renders Go text/template cases for test_package_go.py: reads [{"template": ..., "data": ...}]
// as JSON on stdin, writes [{"out": ...} or {"err": ...}] as JSON on stdout. Templates run with
// missingkey=zero and a json function, as Ollama runs them.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Case struct {
	Template string         `json:"template"`
	Data     map[string]any `json:"data"`
}

type Result struct {
	Out string `json:"out"`
	Err string `json:"err,omitempty"`
}

func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	results := make([]Result, len(cases))
	for i, c := range cases {
		t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(c.Template)
		if err != nil {
			results[i].Err = err.Error()
			continue
		}
		var b strings.Builder
		if err := t.Execute(&b, c.Data); err != nil {
			results[i].Err = err.Error()
			continue
		}
		results[i].Out = b.String()
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		panic(err)
	}
}
