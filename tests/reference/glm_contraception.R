# Reference values for hospstudy.models.glm.logit (tests/test_glm_reference.py).
# Run from the repository root:  Rscript tests/reference/glm_contraception.R
# Data: mlmRev::Contraception (Bangladesh Fertility Survey 1988; 1934 women in 60 districts).
# Cluster-robust errors: sandwich::vcovCL, type "HC0", cadjust = TRUE (the G/(G-1) factor),
# which is vcovCL's default for glm objects.
suppressMessages({library(mlmRev); library(sandwich); library(jsonlite)})
d <- Contraception
d <- d[order(d$district, d$woman), ]
out <- data.frame(
  use = as.integer(d$use == "Y"), age = d$age, age2 = d$age^2,
  urban = as.integer(d$urban == "Y"), livch = as.character(d$livch),
  district = as.integer(as.character(d$district)),
  w = 1 + (as.integer(as.character(d$district)) %% 3) * 0.5
)
write.csv(out, "tests/reference/glm_contraception.csv", row.names = FALSE)
ctl <- glm.control(epsilon = 1e-14, maxit = 100)
f <- use ~ age + age2 + urban + livch
fit <- glm(f, binomial, data = out, control = ctl)
wfit <- suppressWarnings(glm(f, binomial, data = out, weights = w, control = ctl))
se <- function(v) unname(sqrt(diag(v)))
res <- list(
  terms = names(coef(fit)),
  coef = unname(coef(fit)),
  se_model = se(vcov(fit)),
  loglik = as.numeric(logLik(fit)),
  se_cluster = se(vcovCL(fit, cluster = ~district)),
  se_cluster_noadj = se(vcovCL(fit, cluster = ~district, cadjust = FALSE)),
  se_hc0 = se(vcovHC(fit, type = "HC0")),
  wcoef = unname(coef(wfit)),
  wse_model = se(vcov(wfit)),
  wse_cluster = se(vcovCL(wfit, cluster = ~district)),
  wse_hc0 = se(vcovHC(wfit, type = "HC0")),
  R = R.version.string, sandwich = as.character(packageVersion("sandwich"))
)
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/reference/glm_contraception.json")
