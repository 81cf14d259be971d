//! OoD detection metrics: FPR at 95% TPR, AUROC, AUPR, accuracy.
