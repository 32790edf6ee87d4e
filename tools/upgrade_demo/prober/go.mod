module podkit/e2e/prober

go 1.22
