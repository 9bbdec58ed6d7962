package controllers

import (
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/runtime"

	v1 "github.com/sessionstore/sessionstore-operator/api/v1"
)

// argoHealthScript is the health check docs/argocd/health.lua ships for
// Argo CD's resource.customizations.
var argoHealthScript = filepath.Join("..", "docs", "argocd", "health.lua")

// argoHealthOf runs the shipped Lua on store as Argo CD does: the object as
// a table named obj, the script's result a table with status and message.
func argoHealthOf(t *testing.T, store *v1.SessionStore) string {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(store)
	if err != nil {
		t.Fatal(err)
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", luaValue(L, obj))
	if err := L.DoFile(argoHealthScript); err != nil {
		t.Fatalf("%s: %v", argoHealthScript, err)
	}
	result, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("%s returned %s, want a table", argoHealthScript, L.Get(-1).Type())
	}
	status := result.RawGetString("status").String()
	if result.RawGetString("message").Type() != lua.LTString {
		t.Fatalf("%s gave no message with status %s", argoHealthScript, status)
	}
	return status
}

// luaValue converts what encoding/json-shaped data holds into Lua values,
// lists becoming sequences as Argo CD's own conversion makes them.
func luaValue(L *lua.LState, v any) lua.LValue {
	switch val := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(val)
	case string:
		return lua.LString(val)
	case int64:
		return lua.LNumber(val)
	case float64:
		return lua.LNumber(val)
	case []any:
		t := L.NewTable()
		for _, item := range val {
			t.Append(luaValue(L, item))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, item := range val {
			t.RawSetString(k, luaValue(L, item))
		}
		return t
	}
	panic("unexpected JSON value type")
}
