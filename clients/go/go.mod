module github.com/livehub/livehub/clients/go

go 1.19
