# Aliases for ./dev, which does the work (and documents it: ./dev help).
.PHONY: run test bench
run:
	./dev run
test:
	./dev test
bench:
	./dev bench
