# ruff: noqa: E501  (a catalog: one phrase and its translation per line)
"""The console's words in English and French: one small catalog, keyed by the English text.

The language is the user's choice (``?lang=fr`` remembers it in a cookie, and a logged-in
user's choice is stored with the account), else the browser's ``Accept-Language``, else
English. A phrase missing from a catalog shows in English rather than failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

LANGUAGES: Final = ("en", "fr")
DEFAULT: Final = "en"

FRENCH: Final[Mapping[str, str]] = {
    "Alerts": "Alertes",
    "On call": "Astreinte",
    "Log in": "Connexion",
    "Log out": "Déconnexion",
    "Name": "Nom",
    "Password": "Mot de passe",
    "Wrong name or password.": "Nom ou mot de passe incorrect.",
    "Too many attempts; try again later.": "Trop de tentatives ; réessayez plus tard.",
    "This account is locked for a while after repeated failures.": "Ce compte est bloqué pour un moment après des échecs répétés.",
    "Open alerts": "Alertes ouvertes",
    "Recent alerts": "Alertes récentes",
    "No open alert.": "Aucune alerte ouverte.",
    "Severity": "Gravité",
    "Summary": "Résumé",
    "Source": "Source",
    "Age": "Âge",
    "Status": "État",
    "Step": "Étape",
    "Calling": "Appel en cours",
    "Actions": "Actions",
    "What the calls say": "Ce que disent les appels",
    "Hear it first": "L'écouter d'abord",
    "Language of the preview": "Langue de l'écoute",
    "Choose your password": "Choisissez votre mot de passe",
    "You were invited to the voipalert console as %(name)s.": "Vous êtes invité·e à la console voipalert en tant que %(name)s.",
    "Again": "Encore",
    "Create my account": "Créer mon compte",
    "The passwords differ.": "Les mots de passe diffèrent.",
    "This invitation is unknown, used or expired; ask for a new one.": "Cette invitation est inconnue, déjà utilisée ou expirée ; demandez-en une nouvelle.",
    "Invitation link for %(name)s (one use, 72 hours), shown only now:": "Lien d'invitation pour %(name)s (un seul usage, 72 heures), affiché une seule fois :",
    "Invite (they choose their password)": "Inviter (la personne choisit son mot de passe)",
    "Mass alert": "Alerte de masse",
    "Everyone in the team is called at once; each person's outcome is recorded.": "Toute l'équipe est appelée en même temps ; le résultat de chacun est enregistré.",
    "Launch": "Lancer",
    "Recent mass alerts": "Alertes de masse récentes",
    "Pick a team and type a message.": "Choisissez une équipe et écrivez un message.",
    "answered_no_ack": "décroché sans touche",
    "no_answer": "pas de réponse",
    "busy": "occupé",
    "declined": "refusé",
    "unreachable": "injoignable",
    "failed": "échec",
    "cancelled": "annulé",
    "done": "terminé",
    "interrupted": "interrompu",
    "Test call": "Appel de test",
    "Target (SIP URI, extension or number)": "Cible (URI SIP, poste ou numéro)",
    "Message": "Message",
    "Call": "Appeler",
    "The page answers when the call has ended.": "La page répond quand l'appel est terminé.",
    "Test calls need voipalert serve.": "Les appels de test demandent voipalert serve.",
    "Give a target and a message.": "Donnez une cible et un message.",
    "Service": "Service",
    "Ready": "Prêt",
    "yes": "oui",
    "no": "non",
    "Database": "Base de données",
    "SIP registration": "Enregistrement SIP",
    "API tokens": "Jetons d'API",
    "Token %(name)s, shown only now:": "Jeton %(name)s, affiché une seule fois :",
    "Webhook signing secret:": "Secret de signature des webhooks :",
    "Scopes": "Portées",
    "Created": "Créé",
    "Last used": "Dernier usage",
    "revoked": "révoqué",
    "active": "actif",
    "Revoke": "Révoquer",
    "Create a token": "Créer un jeton",
    "Effective settings": "Réglages effectifs",
    "Pick at least one scope.": "Choisissez au moins une portée.",
    "No such token.": "Jeton inconnu.",
    "Use 1-64 letters, digits, '.', '_' or '-'.": "Utilisez 1 à 64 lettres, chiffres, « . », « _ » ou « - ».",
    "Rota": "Rota",
    "The rota was applied.": "La rota a été appliquée.",
    "The rota was not accepted:": "La rota n'a pas été acceptée :",
    "Preview": "Aperçu",
    "Before": "Avant",
    "After": "Après",
    "Apply": "Appliquer",
    "Check and preview": "Vérifier et prévisualiser",
    "Who is on call changes in the next 14 days:": "Qui est d'astreinte change dans les 14 prochains jours :",
    "Nobody is on call differently in the next 14 days.": "Personne n'est d'astreinte différemment dans les 14 prochains jours.",
    "The rota was changed by someone else since this preview; preview again.": "La rota a été modifiée par quelqu'un d'autre depuis cet aperçu ; prévisualisez à nouveau.",
    "Users": "Utilisateurs",
    "Role": "Rôle",
    "Last log-in": "Dernière connexion",
    "Set role": "Changer le rôle",
    "New password": "Nouveau mot de passe",
    "Add a user": "Ajouter un utilisateur",
    "Saved.": "Enregistré.",
    "Check the name and the role.": "Vérifiez le nom et le rôle.",
    "You cannot remove or demote yourself here.": "Vous ne pouvez pas vous supprimer ni vous rétrograder ici.",
    "That name is taken.": "Ce nom est déjà pris.",
    "No such user.": "Utilisateur inconnu.",
    "Password of %(name)s, shown only now:": "Mot de passe de %(name)s, affiché une seule fois :",
    "locked until %(at)s": "bloqué jusqu'à %(at)s",
    "any": "toutes",
    "Filter": "Filtrer",
    "Clear": "Effacer",
    "Acknowledge": "Acquitter",
    "Resolve": "Résoudre",
    "Confirm": "Confirmer",
    "Cancel": "Annuler",
    "Acknowledge alert #%(id)s?": "Acquitter l'alerte n°%(id)s ?",
    "Resolve alert #%(id)s?": "Résoudre l'alerte n°%(id)s ?",
    "Acknowledging stops the calls for this alert; you take the incident.": "Acquitter arrête les appels pour cette alerte ; vous prenez l'incident en charge.",
    "Resolving closes the alert and cancels its pending calls.": "Résoudre ferme l'alerte et annule ses appels en attente.",
    "Alert #%(id)s acknowledged.": "Alerte n°%(id)s acquittée.",
    "Alert #%(id)s resolved.": "Alerte n°%(id)s résolue.",
    "Alert #%(id)s was already %(status)s.": "L'alerte n°%(id)s était déjà %(status)s.",
    "Alert": "Alerte",
    "Timeline": "Chronologie",
    "Received": "Reçue",
    "Payload": "Contenu reçu",
    "Labels": "Étiquettes",
    "Calls": "Appels",
    "Person": "Personne",
    "Contact": "Contact",
    "Dialled": "Composé",
    "Answered": "Décroché",
    "Ended": "Terminé",
    "Outcome": "Résultat",
    "SIP status": "Statut SIP",
    "Key": "Touche",
    "Detail": "Détail",
    "No call yet.": "Aucun appel pour l'instant.",
    "Acknowledged by %(who)s via %(via)s at %(at)s.": "Acquittée par %(who)s via %(via)s à %(at)s.",
    "Resolved by %(who)s at %(at)s.": "Résolue par %(who)s à %(at)s.",
    "Policy": "Politique",
    "Team": "Équipe",
    "Occurrences": "Occurrences",
    "When": "Quand",
    "Who": "Qui",
    "What": "Quoi",
    "Who is on call": "Qui est d'astreinte",
    "Now": "Maintenant",
    "Next 14 days": "14 prochains jours",
    "What if": "Et si",
    "Show": "Afficher",
    "nobody (gap)": "personne (trou)",
    "Overrides": "Remplacements",
    "Made by": "Fait par",
    "Overrides made since the last import (see On call): %(n)s. They are in this text; applying it makes them part of the rota file.": "Remplacements faits depuis le dernier import (voir Astreinte) : %(n)s. Ils sont dans ce texte ; l'appliquer les intègre au fichier de la rota.",
    "rota file": "fichier de la rota",
    "Add an override": "Ajouter un remplacement",
    "Schedule": "Planning",
    "Start": "Début",
    "End": "Fin",
    "Replaces (optional)": "Remplace (facultatif)",
    "Add": "Ajouter",
    "Remove": "Supprimer",
    "Times without an offset are the schedule's local time.": "Les heures sans décalage sont l'heure locale du planning.",
    "Override added.": "Remplacement ajouté.",
    "Override removed.": "Remplacement supprimé.",
    "The override was not added:": "Le remplacement n'a pas été ajouté :",
    "That override no longer exists.": "Ce remplacement n'existe plus.",
    "You may only add or remove your own overrides.": "Vous ne pouvez ajouter ou supprimer que vos propres remplacements.",
    "No schedule in the rota.": "Aucun planning dans la rota.",
    "Forbidden": "Interdit",
    "Your role does not allow this.": "Votre rôle ne le permet pas.",
    "The form has expired; reload the page and try again.": "Le formulaire a expiré ; rechargez la page et réessayez.",
    "Not found": "Introuvable",
    "live": "en direct",
    "Language": "Langue",
    "signed in as %(name)s (%(role)s)": "connecté·e en tant que %(name)s (%(role)s)",
    "layer %(name)s": "couche %(name)s",
    "override": "remplacement",
    "override of %(name)s": "remplacement de %(name)s",
    "not an ISO date-time": "pas une date ISO",
    "triggered": "déclenchée",
    "acknowledged": "acquittée",
    "resolved": "résolue",
    "closed_unacknowledged": "fermée sans acquittement",
    "critical": "critique",
    "error": "erreur",
    "warning": "avertissement",
    "info": "info",
    "pending": "en attente",
    "in_flight": "en ligne",
    "calling": "appel en cours",
}

CATALOGS: Final[Mapping[str, Mapping[str, str]]] = {"en": {}, "fr": FRENCH}


def negotiate(accept_language: str | None) -> str:
    """The first language of ``Accept-Language`` (by q-value) that we speak."""
    if not accept_language:
        return DEFAULT
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:7])
            except ValueError:
                quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else DEFAULT


class Translator:
    def __init__(self, language: str) -> None:
        self.language = language if language in CATALOGS else DEFAULT
        self._catalog = CATALOGS[self.language]

    def __call__(self, text: str, **values: object) -> str:
        phrase = self._catalog.get(text, text)
        return phrase % values if values else phrase
