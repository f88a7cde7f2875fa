module ylokh

go 1.19
