# The expected numbers of tests/evaluate/test_paired.py, from R's pROC (DeLong) and binom.test
# (McNemar's exact test). Regenerate with:  Rscript tests/evaluate/paired_reference.R
# (Debian: apt-get install r-cran-proc). The data set is integer arithmetic, so Python builds
# the very same numbers (test_paired.py: reference_data()).
suppressMessages(library(pROC))
i <- 0:79
y <- as.integer((i * 13) %% 80 < 32)                    # 32 positives, 48 negatives
a <- ((i * 17) %% 23 + 9 * y) / 32                       # model A's p(positive), with ties
b <- ((i * 29) %% 19 + 6 * y + (i %% 3)) / 28            # model B's
ra <- roc(y, a, levels = c(0, 1), direction = "<", quiet = TRUE)
rb <- roc(y, b, levels = c(0, 1), direction = "<", quiet = TRUE)
t <- roc.test(ra, rb, method = "delong", paired = TRUE)
cat(sprintf("auc_a = %.12f\nauc_b = %.12f\n", as.numeric(auc(ra)), as.numeric(auc(rb))))
ca <- ci.auc(ra, method = "delong"); cb <- ci.auc(rb, method = "delong")
cat(sprintf("ci_a = [%.12f, %.12f]\nci_b = [%.12f, %.12f]\n", ca[1], ca[3], cb[1], cb[3]))
cat(sprintf("z = %.12f\np_value = %.12f\ndiff_ci = [%.12f, %.12f]\n",
            t$statistic, t$p.value, t$conf.int[1], t$conf.int[2]))
# McNemar's exact test: A positive when a >= 0.5, B when b >= 0.5; discordant pairs among the
# positives (sensitivity) and among the negatives (specificity), two-sided binomial at 1/2
pa <- a >= 0.5; pb <- b >= 0.5
for (cls in c(1, 0)) {
  ok_a <- (pa == (y == 1))[y == cls]; ok_b <- (pb == (y == 1))[y == cls]
  only_a <- sum(ok_a & !ok_b); only_b <- sum(!ok_a & ok_b)
  p <- binom.test(only_a, only_a + only_b, 0.5)$p.value
  cat(sprintf("%s: only_a = %d, only_b = %d, p = %.12f\n",
              if (cls == 1) "sensitivity" else "specificity", only_a, only_b, p))
}
# Cohen's kappa of the two models' decisions (by its definition: observed vs chance agreement)
po <- mean(pa == pb); pe <- mean(pa) * mean(pb) + mean(!pa) * mean(!pb)
cat(sprintf("kappa = %.12f\n", (po - pe) / (1 - pe)))
