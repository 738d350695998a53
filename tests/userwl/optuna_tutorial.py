"""Optuna's tutorial objectives, unchanged (https://optuna.readthedocs.io tutorials)."""
import optuna
import sklearn.datasets
import sklearn.ensemble
import sklearn.linear_model
import sklearn.model_selection
import sklearn.svm


def quadratic(trial):
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def iris_classifier(trial):
    iris = sklearn.datasets.load_iris()
    x, y = iris.data, iris.target

    classifier_name = trial.suggest_categorical("classifier", ["SVC", "RandomForest"])
    if classifier_name == "SVC":
        svc_c = trial.suggest_float("svc_c", 1e-10, 1e10, log=True)
        classifier_obj = sklearn.svm.SVC(C=svc_c, gamma="auto")
    else:
        rf_max_depth = trial.suggest_int("rf_max_depth", 2, 32, log=True)
        classifier_obj = sklearn.ensemble.RandomForestClassifier(
            max_depth=rf_max_depth, n_estimators=10
        )

    score = sklearn.model_selection.cross_val_score(classifier_obj, x, y, n_jobs=-1, cv=3)
    accuracy = score.mean()
    return accuracy


def pruned_sgd(trial):
    iris = sklearn.datasets.load_iris()
    classes = list(set(iris.target))
    train_x, valid_x, train_y, valid_y = sklearn.model_selection.train_test_split(
        iris.data, iris.target, test_size=0.25, random_state=0
    )

    alpha = trial.suggest_float("alpha", 1e-5, 1e-1, log=True)
    clf = sklearn.linear_model.SGDClassifier(alpha=alpha)

    for step in range(100):
        clf.partial_fit(train_x, train_y, classes=classes)

        # Report intermediate objective value.
        intermediate_value = 1.0 - clf.score(valid_x, valid_y)
        trial.report(intermediate_value, step)

        # Handle pruning based on the intermediate value.
        if trial.should_prune():
            raise optuna.TrialPruned()

    return 1.0 - clf.score(valid_x, valid_y)


def seeded_pruned_sgd(trial):
    """``pruned_sgd`` with NumPy's global seed set per trial, as a user wanting repeatable runs
    writes it: SGDClassifier shuffles from that global state, so the tutorial's values (and
    whether the median rule prunes within 10 trials) vary from run to run."""
    import numpy as np

    np.random.seed(trial.number)
    return pruned_sgd(trial)


def with_attrs(trial):
    """Optuna's Trial API beyond suggest: number, params, user attributes."""
    x = trial.suggest_float("x", 0.0, 1.0, step=0.25)
    n = trial.suggest_int("n", 1, 9, step=2)
    trial.set_user_attr("seen", {"number": trial.number, "params": dict(trial.params)})
    return x + n


def changes_its_range(trial):
    """A later trial asks for x with another range: not one distribution."""
    high = 1.0 if trial.number == 0 else 2.0
    return trial.suggest_float("x", 0.0, high)


HIGH = 1.0  # what edited() asks x's range up to: a test edits it between runs


def edited(trial):
    """An objective whose range is edited before its study is resumed."""
    return trial.suggest_float("x", 0.0, HIGH)


def suggests_nothing(trial):
    return 1.0
