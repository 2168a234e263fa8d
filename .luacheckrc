std = "lua54"
max_line_length = 100
files["spec/"] = { std = "+busted" }
files["bench/"] = { globals = { "arg" } }
files["examples/"] = { globals = { "arg" } }
exclude_files = { "build*/" }
