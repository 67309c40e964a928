"""Every sentence a participant reads: messages, consent, instructions and view captions.

Kept in one module so a researcher can reword the study without reading the page code.
The texts use the words of the participant pages ("Overview", "Features", "the model's
answer"). The stage names (U, C, R_l, R_g, P) appear only as dictionary keys.
"""

from __future__ import annotations

# Messages for links that cannot start or resume a participation. They never echo the
# link's values, so a crafted link cannot put its own text on the page.
MISSING_STUDY = (
    "This link does not name a study. Please use the exact link you were given, "
    "which contains `?study=...`."
)
UNKNOWN_STUDY = (
    "This study link is not valid: no study of that name exists on this server. "
    "Please check the link you were given or contact the researcher."
)
STUDY_NOT_READY = (
    "This study is not open yet because its material has not been prepared. "
    "Please try again later or contact the researcher."
)
STUDY_TYPE_NOT_SERVED = (
    "This study cannot be taken on this server yet, because its pages are not available. "
    "Please contact the researcher."
)
CONDITION_REJECTED = (
    "This link contains a `condition` parameter, but the condition is assigned by the study. "
    "Please open the link without it."
)
INVALID_PARTICIPANT = (
    "This participant link is not valid for this study. "
    "Please use the exact link of your own session, or open the study link without "
    "`participant=...` to start a new session."
)
JOIN_FAILED = "You could not be added to this study: {reason}"

CONSENT_TITLE = "Before you start"
_CONSENT_INVITATION = """
You are invited to take part in a research study on how people understand the
explanations of a machine-learning model. The model looks at a picture and answers a
question about it.
""".strip()
_CONSENT_TERMS = """
- Participation is voluntary and you may stop at any time.
- We record your answers and the time you take. We do not ask for your name. A panel id,
  when the link contains one, is stored only as a salted hash.
- Your answers are analysed in aggregate and may be published without anything that
  identifies you.
""".strip()
# The task of each study type, in one or two sentences of the consent page.
_CONSENT_TASKS = {
    "simulation": (
        "For each question you see explanations of the model and guess which answer "
        "**the model** gave. The model is sometimes wrong, so the true answer is not always "
        "the model's answer."
    ),
    "concept": (
        "For each item you see what one part of the model responds to, and you describe in "
        "a few words the concept you think it detects."
    ),
    "error": (
        "For each item you see a question that the model answered wrongly, and you say what "
        "kind of error you think the model made."
    ),
}
CONSENT_BY_TYPE = {study_type: f"{_CONSENT_INVITATION} {task}\n\n{_CONSENT_TERMS}"
                   for study_type, task in _CONSENT_TASKS.items()}
CONSENT = CONSENT_BY_TYPE["simulation"]
CONSENT_CHECKBOX = "I have read the information above and agree to take part."
CONSENT_BUTTON = "Continue"
CONSENT_MISSING = "Please tick the box to agree before you continue."

INSTRUCTIONS_TITLE = "How the study works"
INSTRUCTIONS_TASK = """
For each item you see a picture, a question about it and the answers the model could
give. Explanations of the model are shown beside them. Use them to guess
**which answer the model gave**, whether or not that answer is correct.
""".strip()
INSTRUCTIONS_PRACTICE = (
    "You start with {practice_items}. After each one you are told the model's "
    "answer, and they do not count."
)
INSTRUCTIONS_COUNTED = "{n_counted} items count. For those you get no feedback."
INSTRUCTIONS_COLORS = """
**Colours.** Red marks parts of the picture or question that push toward what a map
explains (the model's answer, or a feature's response), and blue marks parts that push
away from it. White or no colour means little effect.
""".strip()
INSTRUCTIONS_SLIDER = "A slider above the maps sets how strongly the colours cover the picture."
INSTRUCTIONS_HELPFUL = """
After each answer you are also asked which part helped you more: the **Overview** or the
**Features**.
""".strip()
INSTRUCTIONS_BUTTON_PRACTICE = "Start the practice"
INSTRUCTIONS_BUTTON = "Start"
INSTRUCTIONS_AGAIN = "Instructions"

# One short paragraph per stage, shown only to participants whose condition has it.
STAGE_INSTRUCTIONS = {
    "U": (
        "**Overview: importance of each part.** Maps over the picture and colours over the "
        "question words show which pixels and words pushed the model toward its answer. "
        "Two methods are shown (gradient and LIME); they often agree on the important parts."
    ),
    "C": (
        "**Overview: interactions between the question and the picture.** Pick a question "
        "word to see which parts of the picture matter *together with* that word. For a few "
        "picture regions you also see which question words matter together with them."
    ),
    "R_l": (
        "**Features: what the model detects in this item.** Inside the model, units called "
        "features respond to patterns. For each of a few features that matter most for the "
        "model's answer, you see how strongly it responds to this item and which pixels and "
        "words make it respond."
    ),
    "R_g": (
        "**Features: what each feature responds to in general.** For each of those features "
        "you see the items, taken from a large set, to which it responds most strongly. "
        "What these items share hints at what the feature detects."
    ),
    "P": (
        "**Features: how the features lead to the answer.** A chart shows the weights of the "
        "features that count most for the model's answer, without naming the answer. A "
        "larger weight means the feature pushes harder toward that answer."
    ),
}

OVERVIEW_TAB = "Overview"
FEATURES_TAB = "Features"

# "How to read this" captions, one per view.
HOW_TO_READ = {
    "U_image": (
        "How to read this: red pixels pushed the model toward its answer, blue pixels "
        "pushed it away. Gradient looks at single pixels, LIME at patches."
    ),
    "U_text": (
        "How to read this: red words pushed the model toward its answer, blue words "
        "away from it."
    ),
    "C_token": (
        "How to read this: red parts of the picture raise the effect of the chosen word on "
        "the answer, blue parts lower it."
    ),
    "C_region": (
        "How to read this: the outlined area is a picture region. Red words raise its "
        "effect on the answer, blue words lower it."
    ),
    "C_live": (
        "How to read this: red parts of the picture raise the effect of the word on the "
        "model's answer, blue parts lower it. An outlined square is one of the picture "
        "regions whose effect depends most on the chosen words together."
    ),
    "R_l": (
        "How to read this: the number says how strongly the feature responds to this item. "
        "Red pixels and words make it respond more, blue ones less."
    ),
    "R_g": (
        "How to read this: these items make the feature respond most. Look for what they "
        "have in common (a shape, a colour, a word)."
    ),
    "R_g_bottom": "These items make the feature respond least.",
    "P": (
        "How to read this: each bar is one feature and its weight for the model's answer. "
        "The table also gives the feature's value on this item and their product, the "
        "feature's contribution."
    ),
}

SPARSE_MODEL = (
    "These weights come from a simpler model that gives the same answer as the model on "
    "{fidelity:.0f}% of items, using {n_nonzero} non-zero weights in all."
)

RG_TOP = "**Items to which this feature responds most**"
RG_BOTTOM = "**Items to which this feature responds least**"
RG_QUESTION = "{question}"
RG_ACTIVATION = "The feature responds {activation:.2f} to this item."

OPACITY_SLIDER = "Colour strength over the picture"
LEGEND_CAPTION = "Colour scale: blue is negative, white is zero, red is positive."
QUESTION_WORD = "Question word"

PROGRESS = "{answered} of {total} items answered"
PRACTICE_HEADER = "Practice item {number} of {total} (does not count)"
ITEM_HEADER = "Item {number} of {total}"
QUESTION = "**Question:** {question}"
ANSWER_LABEL = "Which answer did the model give?"
HELPFUL_LABEL = "Which helped you more: Overview or Features?"
HELPFUL_OPTIONS = {"Overview": "overview", "Features": "features"}
SUBMIT_BUTTON = "Submit answer"
ANSWER_MISSING = "Please choose the answer you think the model gave."
HELPFUL_MISSING = "Please say whether the Overview or the Features helped you more."

FEEDBACK_TITLE = "Practice feedback"
FEEDBACK = "You answered **{answer}**. The model answered **{prediction}**."
FEEDBACK_NOTE = "Practice items do not count. For the items that count you get no feedback."
FEEDBACK_BUTTON = "Continue"

COMPLETION_TITLE = "Thank you!"
COMPLETION = "You have answered every item. Your completion code is:"
COMPLETION_LINK = "Return to the panel and confirm your participation"
COMPLETION_NOTE = "You can close this page now."

# Concept-labelling studies: the participant describes what one feature detects.
INSTRUCTIONS_PRACTICE_UNSCORED = (
    "You start with {practice_items}. They do not count."
)
CONCEPT_INSTRUCTIONS_TASK = """
Inside the model, units called **features** respond to patterns in the picture and the
question. Each item shows one feature. Look at what makes it respond, then write in a
few words the concept you think it stands for (for example a colour, a shape or a kind
of question), and say how confident you are.
""".strip()
# One paragraph per stage that a concept condition shows.
CONCEPT_STAGE_INSTRUCTIONS = {
    "R_l": (
        "**One item.** You see a picture and question to which the feature responds "
        "fairly strongly, with a number for how strongly, and colours that show which "
        "pixels and words make it respond."
    ),
    "R_g": (
        "**Other items.** You also see the three items of a large set to which the feature "
        "responds most, and the three to which it responds least."
    ),
}
CONCEPT_RG_MAPS = "Those items carry colours too, which show what makes the feature respond."
CONCEPT_FEATURE_HEADER = "Feature {feature}"
CONCEPT_LOCAL = "**An item to which this feature responds**"
CONCEPT_LABEL = "What concept does this feature stand for?"
CONCEPT_HELP = "A few words, such as a colour, a shape or a kind of question."
CONCEPT_MISSING = (
    "Please describe the concept in a few words before you submit; an answer of spaces "
    "only does not count."
)
CONCEPT_FEEDBACK = "You wrote:"

CONFIDENCE_LABEL = "How confident are you?"
CONFIDENCE_OPTIONS = {1: "1 (not confident)", 2: "2", 3: "3", 4: "4", 5: "5 (very confident)"}
CONFIDENCE_MISSING = "Please say how confident you are, from 1 to 5."

# Error-categorization studies: the participant says where the model's error comes from.
ERROR_INSTRUCTIONS_TASK = """
Each item is a question that the model answered **wrongly**. You see the picture, the
question, the correct answer and the model's answer. Decide where the error most likely
comes from, and say how confident you are:
""".strip()
# What each error category means, keyed by the stored code (studies.coding.ERROR_CATEGORIES).
ERROR_CATEGORY_HELP = {
    "unimodal": (
        "the model misread the picture or the question on its own, for example it did not "
        "see the shape's colour or did not notice which word matters."
    ),
    "interaction": (
        "the model read the picture and the question, but did not connect the question's "
        "words with the right parts of the picture."
    ),
    "prediction": (
        "the model read and connected both correctly, but its last step still chose the "
        "wrong answer."
    ),
}
ERROR_LIVE_INSTRUCTIONS = (
    "**Interactions for words you choose.** Below the other views you can pick words of the "
    "question. The model then computes, for each word, which parts of the picture matter "
    "together with it, and outlines the three picture regions that matter most together "
    "with the chosen words."
)
ERROR_ANSWERS = "**Correct answer:** {correct}  \n**The model's answer:** {model}"
ERROR_CATEGORY_LABEL = "Where does the model's error come from?"
ERROR_CATEGORY_MISSING = "Please choose where the model's error comes from."
ERROR_FEEDBACK = "You chose **{category}**."

LIVE_TITLE = "Interactions for words you choose"
LIVE_WORDS_LABEL = "Question words"
LIVE_TYPED_LABEL = "Or type words of the question, separated by spaces"
LIVE_BUTTON = "Show interactions"
LIVE_NO_WORDS = "Please pick or type at least one word of the question."
LIVE_UNKNOWN_WORD = (
    "A typed word is not in the question, so nothing was computed. Type the words as "
    "they appear in the question, or pick them from the list."
)
LIVE_SPINNER = "The model is computing the interactions..."
LIVE_FAILED = (
    "The interactions could not be computed on this server. Please answer the item "
    "without them."
)
LIVE_WORD_CAPTION = "Together with “{token}”"
LIVE_REGIONS = "**The three picture regions that matter most together with the chosen words**"
LIVE_REGION_CAPTION = "Region {rank}"
