# Reference values for hospstudy.models.splines (tests/test_splines_reference.py).
# Run from the repository root:  Rscript tests/reference/rms_rcspline.R
# rms is not installed here; rms::rcs() calls Hmisc::rcspline.eval (installed), so the knots
# and the basis (inclx = TRUE, norm = 2) come from Hmisc directly. A second basis is computed
# by Harrell's published truncated-power formula in base R as a cross-check of Hmisc itself.
suppressMessages({library(Hmisc); library(jsonlite)})
d <- read.csv("tests/reference/glm_contraception.csv")
harrell <- function(x, k) {  # Harrell (2015), Regression Modeling Strategies, eq. 2.25, norm = 2
  nk <- length(k); kd <- (k[nk] - k[1])^(2/3); p3 <- function(u) pmax(u, 0)^3
  cbind(x, sapply(1:(nk - 2), function(j)
    p3((x - k[j]) / kd) + ((k[nk - 1] - k[j]) * p3((x - k[nk]) / kd) -
                           (k[nk] - k[j]) * p3((x - k[nk - 1]) / kd)) / (k[nk] - k[nk - 1])))
}
case <- function(x, nk) {
  kn <- suppressWarnings(rcspline.eval(x, nk = nk, knots.only = TRUE))
  grid <- seq(min(x) - 1, max(x) + 1, length.out = 25)
  b <- rcspline.eval(grid, knots = kn, inclx = TRUE, norm = 2)
  list(nk = nk, x = x, knots = kn, grid = grid, basis = unname(b),
       max_diff_formula = max(abs(unname(b) - unname(harrell(grid, kn)))))
}
set.seed(1)
res <- list(
  age3 = case(d$age, 3), age4 = case(d$age, 4), age5 = case(d$age, 5),
  small60 = case(d$age[1:60], 4),
  tied_low = case(c(rep(0, 300), round((1:700)^1.3 / 10, 1)), 4),
  few_values = case(rep(1:6, 20), 5),
  R = R.version.string, Hmisc = as.character(packageVersion("Hmisc"))
)
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = FALSE), "tests/reference/rms_rcspline.json")
