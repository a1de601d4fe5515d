# Reference values for hospstudy.models.trends (tests/test_trends_reference.py).
# Run from the repository root:  Rscript tests/reference/trends_reference.R
# Base R only. Cochran-Armitage = prop.trend.test. Jonckheere-Terpstra's normal approximation
# with ties equals Kendall's tau between the value and the group rank (J - E[J] = S/2 with S
# Kendall's score, and the tie-corrected variance of S is the JT variance times 4), so
# cor.test(method = "kendall", exact = FALSE) is an independent base-R check of z and p.
out <- "tests/reference/fixtures"
rows <- list()
add <- function(name, test, stat, p, extra = NA) rows[[length(rows) + 1]] <<- data.frame(name = name, test = test, statistic = stat, p_value = p, extra = extra)

# prop.trend.test's documented example (smokers among lung-cancer patients, Armitage)
smokers <- c(83, 90, 129, 70); patients <- c(86, 93, 136, 82)
t1 <- prop.trend.test(smokers, patients)
add("smokers", "cochran_armitage", unname(t1$statistic), t1$p.value)
t2 <- prop.trend.test(smokers, patients, score = c(0, 0, 0, 1))
add("smokers_score0001", "cochran_armitage", unname(t2$statistic), t2$p.value)
# esoph (datasets): oesophageal cancer cases among cases+controls by age group (6 ordered groups)
cases <- tapply(esoph$ncases, esoph$agegp, sum); tot <- cases + tapply(esoph$ncontrols, esoph$agegp, sum)
t3 <- prop.trend.test(cases, tot)
add("esoph_age", "cochran_armitage", unname(t3$statistic), t3$p.value)
write.csv(data.frame(group = seq_along(cases), x = as.vector(cases), n = as.vector(tot)), file.path(out, "trends_esoph.csv"), row.names = FALSE)

jt_stat <- function(x, g) {
  lv <- sort(unique(g)); J <- 0
  for (i in seq_along(lv)) for (j in seq_along(lv)) if (i < j) {
    a <- x[g == lv[i]]; b <- x[g == lv[j]]
    J <- J + sum(outer(a, b, "<")) + 0.5 * sum(outer(a, b, "=="))
  }
  J
}
# warpbreaks (datasets): breaks by tension L < M < H (ties present); airquality: ozone by month
wb <- warpbreaks; wb$g <- as.integer(wb$tension)
k1 <- cor.test(wb$breaks, wb$g, method = "kendall", exact = FALSE)
add("warpbreaks", "jonckheere_terpstra", unname(k1$statistic), k1$p.value, jt_stat(wb$breaks, wb$g))
aq <- airquality[!is.na(airquality$Ozone), ]
k2 <- cor.test(aq$Ozone, aq$Month, method = "kendall", exact = FALSE)
add("airquality_ozone_month", "jonckheere_terpstra", unname(k2$statistic), k2$p.value, jt_stat(aq$Ozone, aq$Month))
write.csv(wb[, c("breaks", "g")], file.path(out, "trends_warpbreaks.csv"), row.names = FALSE)
write.csv(aq[, c("Ozone", "Month")], file.path(out, "trends_airquality.csv"), row.names = FALSE)

res <- do.call(rbind, rows)
write.csv(res, file.path(out, "trends_reference.csv"), row.names = FALSE)
print(res, digits = 12)
cat(R.version.string, "\n")
