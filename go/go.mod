module github.com/libylokh/libylokh/go

go 1.19
